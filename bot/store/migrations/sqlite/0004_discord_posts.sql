-- Atelier schema, version 4: a public job identity and the Discord posts of each job.
--
-- Row ids start at 1 in every database, so nothing another installation may see (a button, a message nonce, the
-- look for an already-posted result) may be derived from them alone. `token` is random (80 bits), unique, and
-- what buttons and posts carry. Rows older than this schema get one too.

ALTER TABLE jobs ADD COLUMN token TEXT;

UPDATE jobs SET token = lower(hex(randomblob(10))) WHERE token IS NULL;

CREATE UNIQUE INDEX jobs_token ON jobs (token);

-- Every message the Discord layer posts for a job: its status message, its result (and re-posts of it), a result
-- sent by DM. A row is written before the post is sent (message_id NULL: "being posted"), with the nonce the post
-- carries, so a crash between posting and recording leaves a trace to look for. `legacy` marks posts recorded
-- before tokens existed: their buttons name the job by row id, and are honoured on exactly these messages.
CREATE TABLE discord_posts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    kind       TEXT    NOT NULL CHECK (kind IN ('status', 'result', 'dm')),
    nonce      TEXT    NOT NULL UNIQUE,
    channel_id TEXT,
    message_id TEXT,
    note       TEXT,                                   -- why a delivery reached no message, for /jobs
    legacy     INTEGER NOT NULL DEFAULT 0 CHECK (legacy IN (0, 1)),
    created_at TEXT    NOT NULL,
    posted_at  TEXT
);

CREATE UNIQUE INDEX discord_posts_message ON discord_posts (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX discord_posts_job ON discord_posts (job_id, kind);

-- What the cogs used to keep in jobs.extra and jobs.message_id moves here, so old messages keep their meaning.
INSERT INTO discord_posts (job_id, kind, nonce, channel_id, message_id, legacy, created_at, posted_at)
SELECT id, 'status', lower(hex(randomblob(12))), channel_id, json_extract(extra, '$.status_message_id'), 1,
       created_at, updated_at
FROM jobs WHERE json_extract(extra, '$.status_message_id') IS NOT NULL;

INSERT INTO discord_posts (job_id, kind, nonce, channel_id, message_id, legacy, created_at, posted_at)
SELECT id, 'result', lower(hex(randomblob(12))), channel_id, message_id, 1, updated_at, updated_at
FROM jobs WHERE message_id IS NOT NULL
  AND message_id IS NOT json_extract(extra, '$.status_message_id');

INSERT INTO discord_posts (job_id, kind, nonce, channel_id, note, legacy, created_at)
SELECT id, 'result', lower(hex(randomblob(12))), channel_id, json_extract(extra, '$.delivery_note'), 1, updated_at
FROM jobs WHERE json_extract(extra, '$.delivery_note') IS NOT NULL;

-- A result the previous version had begun to post and never recorded: an unsettled post, so the next attempt looks
-- for it (by its old buttons, on a reply to the job's recorded status message) before posting again.
INSERT INTO discord_posts (job_id, kind, nonce, channel_id, legacy, created_at)
SELECT id, 'result', lower(hex(randomblob(12))), channel_id, 1, updated_at
FROM jobs WHERE json_extract(extra, '$.posting') AND message_id IS NULL
  AND json_extract(extra, '$.delivery_note') IS NULL;
