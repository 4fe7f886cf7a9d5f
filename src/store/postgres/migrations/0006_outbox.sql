-- The transactional outbox: events written in the same transaction as the change
-- they describe, deleted by the relay once the event bus has them.
CREATE TABLE outbox (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- oldest first
    event_id       uuid        NOT NULL UNIQUE,    -- consumers dedup by it
    routing_key    text        NOT NULL,
    payload        json        NOT NULL,           -- the event, as serialized
    created_at     timestamptz NOT NULL,
    -- A relay's claim: another relay takes the message over once it lapses.
    claimed_by     text,
    claimed_until  timestamptz
);
