-- The outbox: one delivery per (route, change), written with the change.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    route           TEXT    NOT NULL,
    change_seq      INTEGER NOT NULL,                 -- changes.seq: the order per subject
    change_id       TEXT    NOT NULL,
    subject         TEXT,                          -- the appointment (ordering key)
    state           TEXT    NOT NULL,              -- pending | failed | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,                 -- epoch ms
    last_error      TEXT,
    last_status     INTEGER,                          -- last HTTP status, if any
    lease_owner     TEXT,                          -- the worker holding it right now
    lease_until     INTEGER,
    enqueued_at     INTEGER NOT NULL,                 -- start of the retry budget
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (route, change_id)
) STRICT;

CREATE INDEX deliveries_due ON deliveries (route, state, next_attempt_at);
CREATE INDEX deliveries_order ON deliveries (route, subject, change_seq);
