-- Scale-out: job leases, the shared signing secret, the shared rate limiter and
-- the live-session registry. The Postgres twin is migrations/postgres/.

-- The worker holding a PROCESSING job, and until when (unix seconds); another
-- worker takes the job once the lease has run out.
ALTER TABLE jobs ADD COLUMN locked_by TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
CREATE INDEX jobs_by_lease ON jobs (status, lease_until);

-- Values every node must agree on (the download-signing secret).
CREATE TABLE settings (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Requests per rate-limit bucket in the window that started at window_start
-- (unix milliseconds).
CREATE TABLE rate_limits (
    bucket TEXT PRIMARY KEY NOT NULL,
    window_start INTEGER NOT NULL,
    hits INTEGER NOT NULL
);

-- Live sessions and the node that holds their audio and model state.
CREATE TABLE live_sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    job_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node_url TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX live_sessions_by_job ON live_sessions (job_id);

-- Single-use stream tokens (SHA-256 of the token), redeemable on any node;
-- expires_at in unix seconds.
CREATE TABLE stream_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
