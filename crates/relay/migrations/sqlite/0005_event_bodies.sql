-- Bodies move out of `events`, so that marking an event processed rewrites a small row and
-- not the whole body.
CREATE TABLE event_bodies (
    seq INTEGER PRIMARY KEY,                   -- events.seq
    raw BLOB    NOT NULL
) STRICT;

INSERT INTO event_bodies (seq, raw) SELECT seq, raw FROM events;

ALTER TABLE events DROP COLUMN raw;
