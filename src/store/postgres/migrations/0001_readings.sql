-- Readings: one row per (user, instant), partitioned by month on the instant.
-- The partitions themselves are made by the store (see partitions.rs): at start-up
-- for the months around now, and before a write for any month it touches. The
-- DEFAULT partition takes a reading whose month has no partition yet, so a write
-- never fails for want of one; the store moves such rows into their month's
-- partition when it creates it.
--
-- Identifier columns use the "C" collation: byte order, like SQLite, and cheaper
-- comparisons in the primary key.
CREATE TABLE readings (
    user_id                text COLLATE "C" NOT NULL,
    ts                     timestamptz      NOT NULL,   -- whole seconds, UTC
    glucose_mg_dl          smallint         NOT NULL CHECK (glucose_mg_dl BETWEEN 20 AND 600),
    status                 text             CHECK (status IN ('low', 'high')),
    trend                  text,
    trend_rate             double precision,
    reading_type           text             NOT NULL,
    source                 text             NOT NULL,
    device_id              text,
    serial_number          text,
    transmitter_id         text,
    source_record_id       text,
    display_offset_minutes smallint,
    version                bigint           NOT NULL,
    created_at             timestamptz      NOT NULL,
    updated_at             timestamptz      NOT NULL,
    PRIMARY KEY (user_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE readings_default PARTITION OF readings DEFAULT;
