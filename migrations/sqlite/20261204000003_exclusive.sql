-- A job whose timeline has at most one speaker at a time (1), or keeps
-- overlapped speech (0, the default).
ALTER TABLE jobs ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0;
