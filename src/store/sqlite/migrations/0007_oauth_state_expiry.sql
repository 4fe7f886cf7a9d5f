-- Expired OAuth states are deleted on a timer (by expiry), and each user keeps
-- only their newest few (by user, then expiry).
CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at_ms);
CREATE INDEX oauth_states_by_user ON oauth_states (user_id, expires_at_ms);
