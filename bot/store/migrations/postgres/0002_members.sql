-- Atelier schema on PostgreSQL, version 2: what each member keeps for themselves (as the SQLite store's version 7):
-- the defaults their commands use when they say nothing else, and a saved photo of themselves for try-on.

CREATE TABLE member_prefs (
    user_id          text        PRIMARY KEY,
    size             text,                                        -- a size preset; NULL: the provider's default
    count            integer     CHECK (count BETWEEN 1 AND 4),  -- NULL: one image
    private_delivery boolean     NOT NULL DEFAULT false,         -- results by DM
    photo            jsonb,                                       -- an image reference, as in jobs.request
    updated_at       timestamptz NOT NULL
);

-- Forgetting a member finds all their jobs, in every server and on the command line, by user id alone.
CREATE INDEX jobs_user ON jobs (user_id);
