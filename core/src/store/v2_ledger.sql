-- Migration 2: the ledger and what hangs off it. Every amount is INTEGER minor units of the
-- currency named on its row (or its subaccount's); rates and percentages are canonical
-- decimal TEXT. Nothing here is ever NUMERIC or REAL.

CREATE TABLE subaccount (
    id             INTEGER PRIMARY KEY,
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
    UNIQUE (account_id, project_id, currency_id)
);
CREATE UNIQUE INDEX subaccount_one_active ON subaccount(account_id, project_id) WHERE active = 1;

CREATE TABLE paymethod (
    id                 INTEGER PRIMARY KEY,
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
    created            TEXT NOT NULL
);

-- status: 1 new, 2 in progress, 3 pledged, 4 paid, 5 refund pending, 6 refunded, 7 fraud, 9 canceled
CREATE TABLE payment (
    id               INTEGER PRIMARY KEY,
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
    external_id      TEXT
);
CREATE INDEX payment_account ON payment(account_id, id);
CREATE INDEX payment_subaccount ON payment(subaccount_id, status, id);
CREATE INDEX payment_status ON payment(status, id);
CREATE INDEX payment_free ON payment(subaccount_id, paydate, id) WHERE status IN (4, 5);
CREATE UNIQUE INDEX payment_number ON payment(project_id, number) WHERE number <> '';
CREATE UNIQUE INDEX payment_external ON payment(paymethod_id, external_id) WHERE external_id IS NOT NULL;

-- Invoice lines (payment.orderinfo)
CREATE TABLE orderinfo (
    id         INTEGER PRIMARY KEY,
    payment_id INTEGER NOT NULL REFERENCES payment(id),
    name       TEXT NOT NULL,
    cost       INTEGER NOT NULL DEFAULT 0,
    taxamount  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX orderinfo_payment ON orderinfo(payment_id, id);

CREATE TABLE discount (
    id         INTEGER PRIMARY KEY,
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
CREATE INDEX discount_project ON discount(project_id, account_id);

CREATE TABLE expense (
    id             INTEGER PRIMARY KEY,
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
    created        TEXT NOT NULL
);
CREATE INDEX expense_subaccount ON expense(subaccount_id, id);
CREATE INDEX expense_account ON expense(account_id, id);
CREATE INDEX expense_unpaid ON expense(subaccount_id, id) WHERE notpayd > 0 AND deleted = 0;

-- What paid what (payment.expense). Allocations are never deleted or edited: freeing one marks
-- it released (and a partial release adds a live row for the part that stays).
CREATE TABLE payment_expense (
    id          INTEGER PRIMARY KEY,
    payment_id  INTEGER NOT NULL REFERENCES payment(id),
    expense_id  INTEGER NOT NULL REFERENCES expense(id),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    released    INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1)),
    released_at TEXT,
    created     TEXT NOT NULL
);
CREATE INDEX payment_expense_payment ON payment_expense(payment_id, id) WHERE released = 0;
CREATE INDEX payment_expense_expense ON payment_expense(expense_id, id) WHERE released = 0;

-- status: 5 pending at the gateway, 6 done, 8 failed (retried)
CREATE TABLE refund (
    id              INTEGER PRIMARY KEY,
    payment_id      INTEGER NOT NULL REFERENCES payment(id),
    amount          INTEGER NOT NULL CHECK (amount > 0),  -- subaccount currency
    paymethodamount INTEGER NOT NULL CHECK (paymethodamount > 0),
    description     TEXT NOT NULL DEFAULT '',
    status          INTEGER NOT NULL CHECK (status IN (5, 6, 8)),
    external_id     TEXT,
    error           TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created         TEXT NOT NULL,
    completed       TEXT
);
CREATE INDEX refund_payment ON refund(payment_id, id);

-- amount units of currency_relate cost rate units of currency_base, from ratedate on.
-- account_id NULL: provider-wide.
CREATE TABLE currencyrate (
    id              INTEGER PRIMARY KEY,
    currency_base   INTEGER NOT NULL REFERENCES currency(id),
    currency_relate INTEGER NOT NULL REFERENCES currency(id),
    rate            TEXT NOT NULL,
    amount          TEXT NOT NULL DEFAULT '1',
    ratedate        TEXT NOT NULL,
    account_id      INTEGER REFERENCES account(id),
    created         TEXT NOT NULL
);
CREATE INDEX currencyrate_lookup ON currencyrate(currency_base, currency_relate, account_id, ratedate);

CREATE TABLE taxrule (
    id              INTEGER PRIMARY KEY,
    project_id      INTEGER NOT NULL REFERENCES project(id),
    company         TEXT NOT NULL DEFAULT '',
    country_id      INTEGER REFERENCES country(id),   -- NULL: any payer country
    type            TEXT NOT NULL DEFAULT 'included',
    taxrate         TEXT NOT NULL,
    specialitemtype INTEGER NOT NULL DEFAULT 0 CHECK (specialitemtype IN (0, 1)),
    itemtype        TEXT NOT NULL DEFAULT '',
    created         TEXT NOT NULL
);

CREATE TABLE ticket (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES account(id),
    payment_id INTEGER REFERENCES payment(id),
    subject    TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created    TEXT NOT NULL
);
CREATE INDEX ticket_account ON ticket(account_id, id);

CREATE TABLE ticket_message (
    id         INTEGER PRIMARY KEY,
    ticket_id  INTEGER NOT NULL REFERENCES ticket(id),
    author     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created    TEXT NOT NULL
);
CREATE INDEX ticket_message_ticket ON ticket_message(ticket_id, id);

-- account.sms: each message with its delivery state
CREATE TABLE sms (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES account(id),
    phone      TEXT NOT NULL,
    message    TEXT NOT NULL,
    notifier   TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    error      TEXT NOT NULL DEFAULT '',
    created    TEXT NOT NULL
);
CREATE INDEX sms_account ON sms(account_id, id);
