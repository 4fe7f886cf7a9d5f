-- A user's open jobs, so that coalescing a request with the same one still
-- queued and counting the user's queued jobs read only those, not the user's
-- whole history (manual and webhook jobs are kept).
CREATE INDEX sync_jobs_open_by_user ON sync_jobs (user_id, provider, trigger)
    WHERE status IN ('queued', 'running');
