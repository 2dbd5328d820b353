-- The inbox: every verified delivery, byte-exact, deduplicated on (event_type, event_id).
CREATE TABLE events (
    seq              BIGSERIAL PRIMARY KEY,             -- arrival order
    event_type       TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    occurred_at      BIGINT,                            -- envelope timestamp, epoch ms
    dealer_uuid      TEXT,
    department_uuid  TEXT,
    received_at      BIGINT  NOT NULL,                  -- epoch ms
    last_received_at BIGINT  NOT NULL,
    delivery_count   BIGINT  NOT NULL DEFAULT 1,        -- how many times myKaarma sent it
    raw              BYTEA   NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending', -- pending | processed | failed
    error            TEXT,
    processed_at     BIGINT,
    UNIQUE (event_type, event_id)
);

CREATE INDEX events_pending ON events (seq) WHERE state = 'pending';

-- Verified deliveries that are not usable envelopes, kept once per distinct body.
CREATE TABLE quarantine (
    sha256           TEXT    PRIMARY KEY,
    received_at      BIGINT  NOT NULL,
    last_received_at BIGINT  NOT NULL,
    delivery_count   BIGINT  NOT NULL DEFAULT 1,
    error            TEXT    NOT NULL,
    raw              BYTEA   NOT NULL
);

-- A row /readyz rewrites to prove the store takes writes.
CREATE TABLE heartbeat (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    written_at BIGINT NOT NULL
);
