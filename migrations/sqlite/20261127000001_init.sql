-- Accounts, API keys, jobs and the credit ledger.
-- Times are RFC 3339 UTC text; ids of users and tasks are UUID text, so the
-- schema ports to Postgres with type changes only.

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    credits INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users (id),
    -- SHA-256 of the whole key; keys are 192-bit random, so no salt or KDF is needed.
    key_hash TEXT NOT NULL UNIQUE,
    -- The first characters, to tell keys apart in listings.
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users (id),
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    task_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    display_name TEXT NOT NULL,
    source_url TEXT,
    input_key TEXT,
    num_speakers INTEGER,
    min_speakers INTEGER,
    max_speakers INTEGER,
    duration_seconds REAL,
    credits_reserved INTEGER NOT NULL DEFAULT 0,
    credits_used INTEGER,
    result TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT
);

CREATE INDEX jobs_by_user ON jobs (user_id, id);
CREATE INDEX jobs_by_status ON jobs (status, id);

-- Every change of a balance, so a charge can be audited (and counted once).
CREATE TABLE credit_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users (id),
    job_id INTEGER,
    delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
