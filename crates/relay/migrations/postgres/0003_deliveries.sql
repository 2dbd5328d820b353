-- The outbox: one delivery per (route, change), written with the change.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    route           TEXT    NOT NULL,
    change_seq      BIGINT NOT NULL,                 -- changes.seq: the order per subject
    change_id       TEXT    NOT NULL,
    subject         TEXT,                          -- the appointment (ordering key)
    state           TEXT    NOT NULL,              -- pending | failed | delivered | dead
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,                 -- epoch ms
    last_error      TEXT,
    last_status     BIGINT,                          -- last HTTP status, if any
    lease_owner     TEXT,                          -- the worker holding it right now
    lease_until     BIGINT,
    enqueued_at     BIGINT NOT NULL,                 -- start of the retry budget
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    UNIQUE (route, change_id)
);

CREATE INDEX deliveries_due ON deliveries (route, state, next_attempt_at);
CREATE INDEX deliveries_order ON deliveries (route, subject, change_seq);
