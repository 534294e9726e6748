-- Atelier schema, version 1: jobs, their delivery outbox, and quota overrides.
--
-- Timestamps are ISO-8601 UTC text in one fixed width ("2025-01-31T09:15:00.000000+00:00"), so that text
-- comparison in SQL is time comparison and the file stays readable with the sqlite3 shell.
-- JSON columns hold dicts/lists; ids from Discord are stored as text like every other id.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never handed out twice
    scope            TEXT    NOT NULL,                   -- "guild:<id>" or "cli"
    user_id          TEXT    NOT NULL,
    origin           TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    request          TEXT    NOT NULL,                   -- JSON
    provider         TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    cost             INTEGER NOT NULL CHECK (cost >= 0),
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    deadline_at      TEXT    NOT NULL,
    handle           TEXT,                               -- JSON: the provider's reference to the job
    queue_position   INTEGER,
    progress         REAL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    outputs          TEXT    NOT NULL DEFAULT '[]',      -- JSON list of StoredOutput
    seed             TEXT,                               -- text: some providers use unsigned 64-bit seeds
    error_code       TEXT,
    error_message    TEXT,
    charged          INTEGER CHECK (charged IN (0, 1)),  -- NULL: unknown whether the provider charged
    refunded         INTEGER NOT NULL DEFAULT 0 CHECK (refunded IN (0, 1)),
    parent_job_id    INTEGER REFERENCES jobs (id),
    channel_id       TEXT,
    message_id       TEXT,
    token_expires_at TEXT,
    submitted_at     TEXT,
    finished_at      TEXT,
    lease_owner      TEXT,
    lease_host       TEXT,
    lease_pid        INTEGER,
    lease_expires_at TEXT,
    extra            TEXT    NOT NULL DEFAULT '{}'       -- JSON
);

-- Quota figures: "today's jobs of this member", newest-first listings.
CREATE INDEX jobs_subject_created ON jobs (scope, user_id, created_at);
-- In-flight counts per member, recovery and operator views select by state.
CREATE INDEX jobs_state ON jobs (state, scope, user_id);
-- renew_leases touches every job of one owner.
CREATE INDEX jobs_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE deliveries (
    job_id          INTEGER NOT NULL REFERENCES jobs (id),
    target          TEXT    NOT NULL,                    -- "discord" or "cli"
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    done_at         TEXT,
    PRIMARY KEY (job_id, target)
);

-- The delivery loop asks "what is due now" every few seconds.
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);

-- Operator overrides of the quota. kind: "member" (subject_id = user id), "role" (subject_id = role id) or
-- "scope" (the scope's default; subject_id = ''). A NULL column means "not set here": the next level applies.
CREATE TABLE quota_limits (
    scope      TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('member', 'role', 'scope')),
    subject_id TEXT    NOT NULL,
    daily      INTEGER CHECK (daily >= 0),
    concurrent INTEGER CHECK (concurrent >= 0),
    PRIMARY KEY (scope, kind, subject_id)
);
