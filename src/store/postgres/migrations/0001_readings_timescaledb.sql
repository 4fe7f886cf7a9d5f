-- Migration 1 where the TimescaleDB extension could be created: the same table
-- as 0001_readings.sql, as a hypertable. TimescaleDB makes its chunks itself, so
-- the store does no partition upkeep for it.
--
-- UNTESTED: the development machine has no TimescaleDB. Kept to the calls that
-- have been stable across TimescaleDB 2.x.
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
);

SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '30 days');
