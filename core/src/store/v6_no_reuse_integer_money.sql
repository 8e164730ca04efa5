-- Migration 6: ids are never reused and money columns hold integers only.
--
-- Every table with an integer id is rebuilt with `AUTOINCREMENT` (SQLite's 12-step procedure:
-- create the new table, copy every row with its id, drop the old one, rename, recreate its
-- indexes and triggers), so that deleting the newest discount, rate or tax rule never frees its
-- id for the next create (history rows keep naming the object they were written for). The
-- migration runs with foreign keys off (`store::migrate`) and is checked with
-- `PRAGMA foreign_key_check` before it commits. `auth_epoch` (one row, id 1) is left as it is.
--
-- The money columns (integer minor units) get `CHECK (typeof(col) = 'integer')`: a REAL (an
-- overflowed sum such as -1.8446744073709552e+19) or a TEXT can never be stored in them, by the
-- engine or by anyone writing to the file.

-- currency
CREATE TABLE new_currency (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,           -- ISO 4217 numeric code
    iso         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name        TEXT NOT NULL,
    minor_units INTEGER NOT NULL CHECK (minor_units BETWEEN 0 AND 6),
    symbol      TEXT NOT NULL DEFAULT '',
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);
INSERT INTO new_currency SELECT * FROM currency;
DROP TABLE currency;
ALTER TABLE new_currency RENAME TO currency;

-- country
CREATE TABLE new_country (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,                  -- ISO 3166-1 numeric code
    iso2 TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL
);
INSERT INTO new_country SELECT * FROM country;
DROP TABLE country;
ALTER TABLE new_country RENAME TO country;

-- project
CREATE TABLE new_project (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO new_project SELECT * FROM project;
DROP TABLE project;
ALTER TABLE new_project RENAME TO project;

-- account
CREATE TABLE new_account (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO new_account SELECT * FROM account;
DROP TABLE account;
ALTER TABLE new_account RENAME TO account;
CREATE INDEX account_status ON account(status, id);
CREATE INDEX account_by_project ON account(project_id, id);
CREATE INDEX account_email ON account(email COLLATE NOCASE);
CREATE INDEX account_name ON account(name);

-- users
CREATE TABLE new_users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO new_users SELECT * FROM users;
DROP TABLE users;
ALTER TABLE new_users RENAME TO users;
CREATE INDEX users_account ON users(account_id);

-- accountgroup
CREATE TABLE new_accountgroup (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL UNIQUE COLLATE NOCASE,
    note    TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL
);
INSERT INTO new_accountgroup SELECT * FROM accountgroup;
DROP TABLE accountgroup;
ALTER TABLE new_accountgroup RENAME TO accountgroup;

-- history
CREATE TABLE new_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    changedate  TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   INTEGER NOT NULL,
    description TEXT NOT NULL,
    user_login  TEXT NOT NULL,
    ip          TEXT NOT NULL,
    action      TEXT NOT NULL
);
INSERT INTO new_history SELECT * FROM history;
DROP TABLE history;
ALTER TABLE new_history RENAME TO history;
CREATE INDEX history_object ON history(object_type, object_id, id);

-- subaccount
CREATE TABLE new_subaccount (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     INTEGER NOT NULL REFERENCES account(id),
    project_id     INTEGER NOT NULL REFERENCES project(id),
    currency_id    INTEGER NOT NULL REFERENCES currency(id),
    balance        INTEGER NOT NULL DEFAULT 0,
    creditlimit    INTEGER NOT NULL DEFAULT 0 CHECK (creditlimit >= 0),
    allowpostpaid  INTEGER NOT NULL DEFAULT 0 CHECK (allowpostpaid IN (0, 1)),
    active         INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    status         INTEGER NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
    referer_id     INTEGER REFERENCES account(id),
    incident_limit INTEGER NOT NULL DEFAULT 0,
    created        TEXT NOT NULL,
    UNIQUE (account_id, project_id, currency_id),
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(balance) = 'integer'),
    CHECK (typeof(creditlimit) = 'integer'),
    CHECK (typeof(incident_limit) = 'integer')
);
INSERT INTO new_subaccount SELECT * FROM subaccount;
DROP TABLE subaccount;
ALTER TABLE new_subaccount RENAME TO subaccount;
CREATE UNIQUE INDEX subaccount_one_active ON subaccount(account_id, project_id) WHERE active = 1;

-- paymethod
CREATE TABLE new_paymethod (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL,
    project_id         INTEGER NOT NULL REFERENCES project(id),
    currency_id        INTEGER NOT NULL REFERENCES currency(id),
    module             TEXT NOT NULL DEFAULT 'manual',
    minamount          INTEGER,
    maxamount          INTEGER,
    commission_percent TEXT NOT NULL DEFAULT '0',
    commission_fixed   INTEGER NOT NULL DEFAULT 0,
    settings           TEXT NOT NULL DEFAULT '{}',
    active             INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created            TEXT NOT NULL,
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(minamount) IN ('integer', 'null')),
    CHECK (typeof(maxamount) IN ('integer', 'null')),
    CHECK (typeof(commission_fixed) = 'integer')
);
INSERT INTO new_paymethod SELECT * FROM paymethod;
DROP TABLE paymethod;
ALTER TABLE new_paymethod RENAME TO paymethod;

-- payment
CREATE TABLE new_payment (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    number           TEXT NOT NULL DEFAULT '',
    project_id       INTEGER NOT NULL REFERENCES project(id),
    account_id       INTEGER NOT NULL REFERENCES account(id),
    subaccount_id    INTEGER NOT NULL REFERENCES subaccount(id),
    paymethod_id     INTEGER REFERENCES paymethod(id),
    currency_id      INTEGER NOT NULL REFERENCES currency(id),
    status           INTEGER NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3, 4, 5, 6, 7, 9)),
    createdate       TEXT NOT NULL,
    paydate          TEXT,
    documentnumber   TEXT NOT NULL DEFAULT '',
    documentdate     TEXT,
    description      TEXT NOT NULL DEFAULT '',
    sender           TEXT NOT NULL DEFAULT '',
    subaccountamount INTEGER NOT NULL CHECK (subaccountamount > 0),
    paymethodamount  INTEGER NOT NULL CHECK (paymethodamount > 0),
    usedamount       INTEGER NOT NULL DEFAULT 0 CHECK (usedamount >= 0),
    refundedamount   INTEGER NOT NULL DEFAULT 0 CHECK (refundedamount >= 0),
    commissionamount INTEGER NOT NULL DEFAULT 0 CHECK (commissionamount >= 0),
    taxamount        INTEGER NOT NULL DEFAULT 0,
    rate             TEXT NOT NULL DEFAULT '1',
    restrictrefund   INTEGER NOT NULL DEFAULT 0 CHECK (restrictrefund IN (0, 1)),
    info             TEXT NOT NULL DEFAULT '',
    note             TEXT NOT NULL DEFAULT '',
    external_id      TEXT,
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(subaccountamount) = 'integer'),
    CHECK (typeof(paymethodamount) = 'integer'),
    CHECK (typeof(usedamount) = 'integer'),
    CHECK (typeof(refundedamount) = 'integer'),
    CHECK (typeof(commissionamount) = 'integer'),
    CHECK (typeof(taxamount) = 'integer')
);
INSERT INTO new_payment SELECT * FROM payment;
DROP TABLE payment;
ALTER TABLE new_payment RENAME TO payment;
CREATE INDEX payment_account ON payment(account_id, id);
CREATE INDEX payment_subaccount ON payment(subaccount_id, status, id);
CREATE INDEX payment_status ON payment(status, id);
CREATE INDEX payment_free ON payment(subaccount_id, paydate, id) WHERE status IN (4, 5);
CREATE UNIQUE INDEX payment_number ON payment(project_id, number) WHERE number <> '';
CREATE UNIQUE INDEX payment_external ON payment(paymethod_id, external_id) WHERE external_id IS NOT NULL;

-- orderinfo
CREATE TABLE new_orderinfo (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id INTEGER NOT NULL REFERENCES payment(id),
    name       TEXT NOT NULL,
    cost       INTEGER NOT NULL DEFAULT 0,
    taxamount  INTEGER NOT NULL DEFAULT 0,
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(cost) = 'integer'),
    CHECK (typeof(taxamount) = 'integer')
);
INSERT INTO new_orderinfo SELECT * FROM orderinfo;
DROP TABLE orderinfo;
ALTER TABLE new_orderinfo RENAME TO orderinfo;
CREATE INDEX orderinfo_payment ON orderinfo(payment_id, id);

-- discount
CREATE TABLE new_discount (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES project(id),
    account_id INTEGER REFERENCES account(id),       -- NULL: a promotion for every client
    actiontype TEXT NOT NULL DEFAULT 'any',
    type       TEXT NOT NULL DEFAULT 'percent',
    percentage TEXT NOT NULL DEFAULT '0',
    priority   INTEGER NOT NULL DEFAULT 0,
    fromdate   TEXT,
    todate     TEXT,
    period     TEXT NOT NULL DEFAULT '',
    itemtype   TEXT NOT NULL DEFAULT '',
    note       TEXT NOT NULL DEFAULT '',
    -- a discount applied to expenses is never destroyed: deleting it marks it deleted
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    created    TEXT NOT NULL
);
INSERT INTO new_discount SELECT * FROM discount;
DROP TABLE discount;
ALTER TABLE new_discount RENAME TO discount;
CREATE INDEX discount_project ON discount(project_id, account_id);

-- expense
CREATE TABLE new_expense (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    subaccount_id  INTEGER NOT NULL REFERENCES subaccount(id),
    account_id     INTEGER NOT NULL REFERENCES account(id),
    name           TEXT NOT NULL DEFAULT '',
    item           TEXT NOT NULL DEFAULT '',
    itemtype       TEXT NOT NULL DEFAULT '',
    operation      TEXT NOT NULL DEFAULT '',
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    notpayd        INTEGER NOT NULL CHECK (notpayd >= 0),
    taxrate        TEXT NOT NULL DEFAULT '0',
    taxamount      INTEGER NOT NULL DEFAULT 0,
    discountamount INTEGER NOT NULL DEFAULT 0,
    discount_id    INTEGER REFERENCES discount(id),
    payment_id     INTEGER REFERENCES payment(id),   -- the payment whose commission this is
    realdate       TEXT NOT NULL,
    cdate          TEXT,
    postpaid       INTEGER NOT NULL DEFAULT 0 CHECK (postpaid IN (0, 1)),
    deleted        INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_at     TEXT,
    created        TEXT NOT NULL,
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(amount) = 'integer'),
    CHECK (typeof(notpayd) = 'integer'),
    CHECK (typeof(taxamount) = 'integer'),
    CHECK (typeof(discountamount) = 'integer')
);
INSERT INTO new_expense SELECT * FROM expense;
DROP TABLE expense;
ALTER TABLE new_expense RENAME TO expense;
CREATE INDEX expense_subaccount ON expense(subaccount_id, id);
CREATE INDEX expense_account ON expense(account_id, id);
CREATE INDEX expense_unpaid ON expense(subaccount_id, id) WHERE notpayd > 0 AND deleted = 0;

-- payment_expense
CREATE TABLE new_payment_expense (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id  INTEGER NOT NULL REFERENCES payment(id),
    expense_id  INTEGER NOT NULL REFERENCES expense(id),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    released    INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1)),
    released_at TEXT,
    created     TEXT NOT NULL,
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(amount) = 'integer')
);
INSERT INTO new_payment_expense SELECT * FROM payment_expense;
DROP TABLE payment_expense;
ALTER TABLE new_payment_expense RENAME TO payment_expense;
CREATE INDEX payment_expense_payment ON payment_expense(payment_id, id) WHERE released = 0;
CREATE INDEX payment_expense_expense ON payment_expense(expense_id, id) WHERE released = 0;

-- refund
CREATE TABLE new_refund (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id      INTEGER NOT NULL REFERENCES payment(id),
    amount          INTEGER NOT NULL CHECK (amount > 0),  -- subaccount currency
    paymethodamount INTEGER NOT NULL CHECK (paymethodamount > 0),
    description     TEXT NOT NULL DEFAULT '',
    status          INTEGER NOT NULL CHECK (status IN (5, 6, 8)),
    external_id     TEXT,
    error           TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created         TEXT NOT NULL,
    completed       TEXT,
    next_attempt    TEXT,                                  -- migration 5
    -- money: integer minor units only, never REAL or TEXT
    CHECK (typeof(amount) = 'integer'),
    CHECK (typeof(paymethodamount) = 'integer')
);
INSERT INTO new_refund SELECT * FROM refund;
DROP TABLE refund;
ALTER TABLE new_refund RENAME TO refund;
CREATE INDEX refund_payment ON refund(payment_id, id);

-- currencyrate
CREATE TABLE new_currencyrate (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    currency_base   INTEGER NOT NULL REFERENCES currency(id),
    currency_relate INTEGER NOT NULL REFERENCES currency(id),
    rate            TEXT NOT NULL,
    amount          TEXT NOT NULL DEFAULT '1',
    ratedate        TEXT NOT NULL,
    account_id      INTEGER REFERENCES account(id),
    created         TEXT NOT NULL
);
INSERT INTO new_currencyrate SELECT * FROM currencyrate;
DROP TABLE currencyrate;
ALTER TABLE new_currencyrate RENAME TO currencyrate;
CREATE INDEX currencyrate_lookup ON currencyrate(currency_base, currency_relate, account_id, ratedate);

-- taxrule
CREATE TABLE new_taxrule (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id      INTEGER NOT NULL REFERENCES project(id),
    company         TEXT NOT NULL DEFAULT '',
    country_id      INTEGER REFERENCES country(id),   -- NULL: any payer country
    type            TEXT NOT NULL DEFAULT 'included',
    taxrate         TEXT NOT NULL,
    specialitemtype INTEGER NOT NULL DEFAULT 0 CHECK (specialitemtype IN (0, 1)),
    itemtype        TEXT NOT NULL DEFAULT '',
    created         TEXT NOT NULL
);
INSERT INTO new_taxrule SELECT * FROM taxrule;
DROP TABLE taxrule;
ALTER TABLE new_taxrule RENAME TO taxrule;

-- ticket
CREATE TABLE new_ticket (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES account(id),
    payment_id INTEGER REFERENCES payment(id),
    subject    TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created    TEXT NOT NULL
);
INSERT INTO new_ticket SELECT * FROM ticket;
DROP TABLE ticket;
ALTER TABLE new_ticket RENAME TO ticket;
CREATE INDEX ticket_account ON ticket(account_id, id);

-- ticket_message
CREATE TABLE new_ticket_message (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  INTEGER NOT NULL REFERENCES ticket(id),
    author     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created    TEXT NOT NULL
);
INSERT INTO new_ticket_message SELECT * FROM ticket_message;
DROP TABLE ticket_message;
ALTER TABLE new_ticket_message RENAME TO ticket_message;
CREATE INDEX ticket_message_ticket ON ticket_message(ticket_id, id);

-- sms
CREATE TABLE new_sms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES account(id),
    phone      TEXT NOT NULL,
    message    TEXT NOT NULL,
    notifier   TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    error      TEXT NOT NULL DEFAULT '',
    created    TEXT NOT NULL
);
INSERT INTO new_sms SELECT * FROM sms;
DROP TABLE sms;
ALTER TABLE new_sms RENAME TO sms;
CREATE INDEX sms_account ON sms(account_id, id);

-- outbox
CREATE TABLE new_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO new_outbox SELECT * FROM outbox;
DROP TABLE outbox;
ALTER TABLE new_outbox RENAME TO outbox;
CREATE INDEX outbox_due ON outbox(status, next_attempt, id);
CREATE INDEX outbox_account ON outbox(account_id, id);

-- outbox_attempt
CREATE TABLE new_outbox_attempt (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id INTEGER NOT NULL REFERENCES outbox(id),
    attempted TEXT NOT NULL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('sent', 'error')),
    error     TEXT NOT NULL DEFAULT ''
);
INSERT INTO new_outbox_attempt SELECT * FROM outbox_attempt;
DROP TABLE outbox_attempt;
ALTER TABLE new_outbox_attempt RENAME TO outbox_attempt;
CREATE INDEX outbox_attempt_outbox ON outbox_attempt(outbox_id, id);

-- triggers of migration 4, dropped with their tables
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

-- No id is ever handed out twice: each sequence starts past the highest id the table holds
-- or its history rows name (a row deleted before this migration keeps its id used).
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence (name, seq) SELECT 'currency', max(coalesce((SELECT max(id) FROM currency), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'currency'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'country', max(coalesce((SELECT max(id) FROM country), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'country'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'project', max(coalesce((SELECT max(id) FROM project), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'project'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'account', max(coalesce((SELECT max(id) FROM account), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'account'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'users', max(coalesce((SELECT max(id) FROM users), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'users'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'accountgroup', max(coalesce((SELECT max(id) FROM accountgroup), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'accountgroup'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'history', max(coalesce((SELECT max(id) FROM history), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'history'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'subaccount', max(coalesce((SELECT max(id) FROM subaccount), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'subaccount'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'paymethod', max(coalesce((SELECT max(id) FROM paymethod), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'paymethod'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'payment', max(coalesce((SELECT max(id) FROM payment), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'payment'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'orderinfo', max(coalesce((SELECT max(id) FROM orderinfo), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'orderinfo'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'discount', max(coalesce((SELECT max(id) FROM discount), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'discount'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'expense', max(coalesce((SELECT max(id) FROM expense), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'expense'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'payment_expense', max(coalesce((SELECT max(id) FROM payment_expense), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'payment_expense'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'refund', max(coalesce((SELECT max(id) FROM refund), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'refund'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'currencyrate', max(coalesce((SELECT max(id) FROM currencyrate), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'currencyrate'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'taxrule', max(coalesce((SELECT max(id) FROM taxrule), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'taxrule'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'ticket', max(coalesce((SELECT max(id) FROM ticket), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'ticket'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'ticket_message', max(coalesce((SELECT max(id) FROM ticket_message), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'ticket_message'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'sms', max(coalesce((SELECT max(id) FROM sms), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'sms'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', max(coalesce((SELECT max(id) FROM outbox), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'outbox'), 0));
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_attempt', max(coalesce((SELECT max(id) FROM outbox_attempt), 0), coalesce((SELECT max(object_id) FROM history WHERE object_type = 'outbox_attempt'), 0));
