-- Atelier schema, version 7: what each member keeps for themselves — the defaults their commands use when they
-- say nothing else, and a saved photo of themselves for try-on.
--
-- One row per Discord user (their preferences follow them across servers). The photo is a blob like any job's
-- input (data/blobs/, by sha256); forgetting a member removes the row and, unless another member's job still uses
-- it, the blob.

CREATE TABLE member_prefs (
    user_id          TEXT    PRIMARY KEY,
    size             TEXT,                                        -- a size preset; NULL: the provider's default
    count            INTEGER CHECK (count BETWEEN 1 AND 4),      -- NULL: one image
    private_delivery INTEGER NOT NULL DEFAULT 0 CHECK (private_delivery IN (0, 1)),  -- results by DM
    photo            TEXT,                                        -- JSON image reference, as in jobs.request
    updated_at       TEXT    NOT NULL
);

-- Forgetting a member finds all their jobs, in every server and on the command line, by user id alone.
CREATE INDEX jobs_user ON jobs (user_id);
