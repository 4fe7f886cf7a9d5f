-- User profiles: the time zone that decides a user's days, the target range,
-- the display unit and the diabetes type.
CREATE TABLE profiles (
    user_id        text COLLATE "C" PRIMARY KEY,
    timezone       text        NOT NULL,
    target_low     int2        NOT NULL,
    target_high    int2        NOT NULL,
    display_unit   text        NOT NULL,
    diabetes_type  text,
    updated_at     timestamptz NOT NULL
);

-- Day marks: the reading upsert adds one to `revision` of every (user, UTC
-- date) it inserts or changes a reading on, in its transaction (after the
-- readings' locks, in (user, day) order).
CREATE TABLE day_marks (
    user_id   text COLLATE "C" NOT NULL,
    day       date             NOT NULL,
    revision  bigint           NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- Daily aggregates per (user, local date), with the basis they were computed
-- on (zone, target range) and the sum of the marks of the UTC dates the local
-- day overlaps. `readings` 0: a day without any. The journal totals are
-- written by the journal and kept by recomputations.
CREATE TABLE daily_aggregates (
    user_id                   text COLLATE "C" NOT NULL,
    day                       date             NOT NULL,
    timezone                  text             NOT NULL,
    target_low                int2             NOT NULL,
    target_high               int2             NOT NULL,
    marks_revision            bigint           NOT NULL,
    readings                  integer          NOT NULL,
    avg_glucose               float8,
    min_glucose               float8,
    max_glucose               float8,
    std_glucose               float8,
    time_in_range_percent     float8,
    time_above_range_percent  float8,
    time_below_range_percent  float8,
    total_sleep_minutes       float8,
    sleep_quality_score       float8,
    total_exercise_minutes    float8,
    total_carbs_grams         float8,
    total_calories            float8,
    computed_at               timestamptz      NOT NULL,
    PRIMARY KEY (user_id, day)
);
