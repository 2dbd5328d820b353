-- The projection: one row per appointment, the newest applied version.
CREATE TABLE appointments (
    uuid              TEXT    PRIMARY KEY,
    dealer_uuid       TEXT,
    department_uuid   TEXT,
    status            TEXT,
    new_status        TEXT,
    appointment_key   TEXT,
    start_time        TEXT,                       -- as received
    end_time          TEXT,                       -- as received
    start_sort        TEXT,                       -- yyyy-MM-ddTHH:mm:ss, for date filters
    is_cancelled      BIGINT NOT NULL,              -- 0 | 1
    deleted           BIGINT NOT NULL,              -- 0 | 1
    version_timestamp BIGINT NOT NULL,              -- epoch ms
    version_seq       BIGINT NOT NULL,              -- events.seq of the applied version
    version_event_id  TEXT    NOT NULL,
    appointment       TEXT    NOT NULL,           -- appointmentInfoResponse JSON as received
    origin_event_id   TEXT,                       -- latest myKaarma-originated change
    origin_timestamp  BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE INDEX appointments_by_dealer ON appointments (dealer_uuid, department_uuid, uuid);
CREATE INDEX appointments_by_start ON appointments (start_sort);

-- Every processed appointment event, applied or stale, with what it changed.
CREATE TABLE appointment_history (
    id               BIGSERIAL PRIMARY KEY,
    appointment_uuid TEXT    NOT NULL,
    event_seq        BIGINT NOT NULL UNIQUE,        -- one entry per event
    event_id         TEXT    NOT NULL,
    event            TEXT,
    new_status       TEXT,
    timestamp        BIGINT NOT NULL,
    kind             TEXT    NOT NULL,
    kinds            TEXT    NOT NULL,            -- JSON array
    pair_of          TEXT,
    fields           TEXT    NOT NULL,            -- JSON array of {path, old, new}
    recorded_at      BIGINT NOT NULL
);

CREATE INDEX appointment_history_by_appointment ON appointment_history (appointment_uuid, timestamp, event_seq);

-- The change stream: one CloudEvent per processed event, in processing order.
CREATE TABLE changes (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,           -- CloudEvent id, stable per source event
    event_seq  BIGINT NOT NULL UNIQUE,
    subject    TEXT,
    kind       TEXT    NOT NULL,
    time       BIGINT NOT NULL,
    cloudevent TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX changes_by_kind ON changes (kind, seq);
