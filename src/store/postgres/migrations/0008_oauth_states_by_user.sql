-- Each user keeps only their newest few OAuth states (expired ones are deleted
-- on a timer through oauth_states_by_expiry).
CREATE INDEX oauth_states_by_user ON oauth_states (user_id, expires_at);
