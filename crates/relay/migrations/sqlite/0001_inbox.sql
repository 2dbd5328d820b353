-- The inbox: every verified delivery, byte-exact, deduplicated on (event_type, event_id).
CREATE TABLE events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT, -- arrival order
    event_type       TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    occurred_at      INTEGER,                           -- envelope timestamp, epoch ms
    dealer_uuid      TEXT,
    department_uuid  TEXT,
    received_at      INTEGER NOT NULL,                  -- epoch ms
    last_received_at INTEGER NOT NULL,
    delivery_count   INTEGER NOT NULL DEFAULT 1,        -- how many times myKaarma sent it
    raw              BLOB    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending', -- pending | processed | failed
    error            TEXT,
    processed_at     INTEGER,
    UNIQUE (event_type, event_id)
) STRICT;

CREATE INDEX events_pending ON events (seq) WHERE state = 'pending';

-- Verified deliveries that are not usable envelopes, kept once per distinct body.
CREATE TABLE quarantine (
    sha256           TEXT    PRIMARY KEY,
    received_at      INTEGER NOT NULL,
    last_received_at INTEGER NOT NULL,
    delivery_count   INTEGER NOT NULL DEFAULT 1,
    error            TEXT    NOT NULL,
    raw              BLOB    NOT NULL
) STRICT;

-- A row /readyz rewrites to prove the store takes writes.
CREATE TABLE heartbeat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at INTEGER NOT NULL
) STRICT;
