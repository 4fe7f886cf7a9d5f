-- Disabled accounts (`cgm-hub users disable`): kept, never deleted; NULL while active.
ALTER TABLE accounts ADD COLUMN disabled_at timestamptz;
