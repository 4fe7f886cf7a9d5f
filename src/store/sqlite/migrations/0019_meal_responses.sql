-- Finished meal glucose responses (issue 20): one row per meal whose response
-- is no longer pending, with the validity key it was computed under
-- (store::meal_responses). Deleting the meal deletes its row in the same
-- transaction (journal.rs); a row is written only while its meal is stored.
CREATE TABLE meal_responses (
    user_id         TEXT    NOT NULL,
    meal_id         TEXT    NOT NULL,   -- journal_entries.id of a meal
    validity_key    TEXT    NOT NULL,
    response        TEXT    NOT NULL,   -- JSON of analytics::MealResponse
    computed_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_id, meal_id)
);
