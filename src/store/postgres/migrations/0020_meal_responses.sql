-- Finished meal glucose responses (issue 20): one row per meal whose response
-- is no longer pending, with the validity key it was computed under
-- (store::meal_responses). The foreign key deletes a meal's row with the meal,
-- also against a write of its response racing the delete.
CREATE TABLE meal_responses (
    user_id       text        NOT NULL,
    meal_id       uuid        NOT NULL REFERENCES journal_entries (id) ON DELETE CASCADE,
    validity_key  text        NOT NULL,
    response      text        NOT NULL,   -- JSON of analytics::MealResponse
    computed_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, meal_id)
);
-- The foreign key's cascade finds a meal's row by its id alone.
CREATE INDEX meal_responses_by_meal ON meal_responses (meal_id);
