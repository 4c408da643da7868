-- Webhooks (AudioPod-style job events) and job cancel.

-- Where a job's events are POSTed, if anywhere.
ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
-- The key that signs a user's webhooks (hex), made on first use.
ALTER TABLE users ADD COLUMN webhook_secret TEXT;

-- One row per event to deliver: durable, retried with backoff, claimed with a
-- lease like jobs, so a restart or a dead node loses none and 2xx ends it.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    -- The event as it happened (JSON); sent with the job's view when the job still exists.
    payload TEXT NOT NULL,
    -- pending, delivered, failed (attempts used up) or stopped (the receiver answered 410)
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_user ON webhook_deliveries (user_id, id);
