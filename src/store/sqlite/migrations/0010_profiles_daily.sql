-- User profiles: the time zone that decides a user's days, the target range,
-- the display unit and the diabetes type.
CREATE TABLE profiles (
    user_id        TEXT    PRIMARY KEY,
    timezone       TEXT    NOT NULL,
    target_low     INTEGER NOT NULL,
    target_high    INTEGER NOT NULL,
    display_unit   TEXT    NOT NULL,
    diabetes_type  TEXT,
    updated_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- Day marks: the reading upsert adds one to `revision` of every (user, UTC
-- date) it inserts or changes a reading on, in its transaction. `day` counts
-- days since 1970-01-01.
CREATE TABLE day_marks (
    user_id   TEXT    NOT NULL,
    day       INTEGER NOT NULL,
    revision  INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;

-- Daily aggregates per (user, local date; days since 1970-01-01), with the
-- basis they were computed on (zone, target range) and the sum of the marks
-- of the UTC dates the local day overlaps. `readings` 0: a day without any.
-- The journal totals are written by the journal and kept by recomputations.
CREATE TABLE daily_aggregates (
    user_id                   TEXT    NOT NULL,
    day                       INTEGER NOT NULL,
    timezone                  TEXT    NOT NULL,
    target_low                INTEGER NOT NULL,
    target_high               INTEGER NOT NULL,
    marks_revision            INTEGER NOT NULL,
    readings                  INTEGER NOT NULL,
    avg_glucose               REAL,
    min_glucose               REAL,
    max_glucose               REAL,
    std_glucose               REAL,
    time_in_range_percent     REAL,
    time_above_range_percent  REAL,
    time_below_range_percent  REAL,
    total_sleep_minutes       REAL,
    sleep_quality_score       REAL,
    total_exercise_minutes    REAL,
    total_carbs_grams         REAL,
    total_calories            REAL,
    computed_at_ms            INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
