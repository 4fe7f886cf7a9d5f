-- The transactional outbox: events written in the same transaction as the change
-- they describe, deleted by the relay once the event bus has them.
CREATE TABLE outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order
    event_id         TEXT    NOT NULL UNIQUE,           -- UUID; consumers dedup by it
    routing_key      TEXT    NOT NULL,
    payload          TEXT    NOT NULL,                  -- the event's JSON
    created_at_ms    INTEGER NOT NULL,
    -- A relay's claim: another relay takes the message over once it lapses.
    claimed_by       TEXT,
    claimed_until_ms INTEGER
);
