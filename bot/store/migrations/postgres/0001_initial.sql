-- Atelier schema on PostgreSQL, version 1: everything the SQLite store holds as of its version 6, in PostgreSQL's
-- own types (timestamptz, jsonb, boolean, identity keys), plus what only a store shared by many processes on
-- many hosts needs: a registry of live processes, the webhook inbox and the image blobs.
--
-- Times are timestamptz. Lease times come from the database's clock (now()), never a host's: hosts' clocks
-- drift apart, and a lease is only as good as the clock both sides read.

CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token            text        NOT NULL UNIQUE,        -- the public identity buttons and posts carry
    scope            text        NOT NULL,               -- "guild:<id>" or "cli"
    user_id          text        NOT NULL,
    origin           text        NOT NULL,
    operation        text        NOT NULL,
    request          jsonb       NOT NULL,
    provider         text        NOT NULL,
    state            text        NOT NULL,
    cost             integer     NOT NULL CHECK (cost >= 0),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deadline_at      timestamptz NOT NULL,
    handle           jsonb,
    queue_position   integer,
    progress         double precision,
    attempts         integer     NOT NULL DEFAULT 0,
    outputs          jsonb       NOT NULL DEFAULT '[]',
    seed             text,                               -- text: some providers use unsigned 64-bit seeds
    error_code       text,
    error_message    text,
    charged          boolean,                            -- NULL: unknown whether the provider charged
    refunded         boolean     NOT NULL DEFAULT false,
    parent_job_id    bigint REFERENCES jobs (id),
    channel_id       text,
    message_id       text,
    token_expires_at timestamptz,
    submitted_at     timestamptz,
    finished_at      timestamptz,
    lease_owner      text,
    lease_host       text,
    lease_pid        integer,
    lease_expires_at timestamptz,
    -- Set while the job waits for a slot at its provider: the shared line every process serves in turn.
    waiting_since    timestamptz,
    slot_at          timestamptz,                        -- when it last took a slot: whose turn it was
    extra            jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX jobs_subject_created ON jobs (scope, user_id, created_at);
CREATE INDEX jobs_state ON jobs (state, scope, user_id);
CREATE INDEX jobs_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_message ON jobs (message_id) WHERE message_id IS NOT NULL;
-- The global slot count: jobs at one provider right now.
CREATE INDEX jobs_at_provider ON jobs (provider, state)
    WHERE state IN ('submitting', 'queued', 'running', 'fetching');
-- The line for a provider's slots.
CREATE INDEX jobs_waiting ON jobs (provider, waiting_since) WHERE waiting_since IS NOT NULL;
-- A webhook call names the provider's job id.
CREATE INDEX jobs_remote_id ON jobs ((handle ->> 'remote_id')) WHERE handle IS NOT NULL;
-- Work nobody holds, for the claim scan.
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state IN ('pending', 'submitting', 'queued', 'running', 'fetching');

CREATE TABLE deliveries (
    job_id          bigint      NOT NULL REFERENCES jobs (id),
    target          text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    done_at         timestamptz,
    PRIMARY KEY (job_id, target)
);

CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);

CREATE TABLE quota_limits (
    scope      text    NOT NULL,
    kind       text    NOT NULL CHECK (kind IN ('member', 'role', 'scope')),
    subject_id text    NOT NULL,
    daily      integer CHECK (daily >= 0),
    concurrent integer CHECK (concurrent >= 0),
    PRIMARY KEY (scope, kind, subject_id)
);

CREATE TABLE guild_settings (
    guild_id   text        NOT NULL,
    key        text        NOT NULL,
    value_json jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (guild_id, key)
);

CREATE TABLE discord_posts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     bigint      NOT NULL REFERENCES jobs (id),
    kind       text        NOT NULL CHECK (kind IN ('status', 'result', 'dm')),
    nonce      text        NOT NULL UNIQUE,
    channel_id text,
    message_id text,
    note       text,
    legacy     boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    posted_at  timestamptz
);

CREATE UNIQUE INDEX discord_posts_message ON discord_posts (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX discord_posts_job ON discord_posts (job_id, kind);

CREATE TABLE retired_models (
    provider   text        NOT NULL,
    model      text        NOT NULL,
    reason     text        NOT NULL,
    marked_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (provider, model)
);

-- Money in integer micro-dollars, as in the SQLite store (bot.money).
CREATE TABLE job_spend (
    job_id         bigint      PRIMARY KEY REFERENCES jobs (id),
    scope          text        NOT NULL,
    user_id        text        NOT NULL,
    operation      text        NOT NULL,
    provider       text        NOT NULL,
    created_at     timestamptz NOT NULL,
    images         integer     NOT NULL CHECK (images >= 0),
    reserved_micro bigint      NOT NULL CHECK (reserved_micro >= 0),
    member_micro   bigint      NOT NULL CHECK (member_micro >= 0),
    settled_at     timestamptz
);

CREATE INDEX job_spend_created ON job_spend (created_at);
CREATE INDEX job_spend_scope_created ON job_spend (scope, created_at);

CREATE TABLE spend_notices (
    scope        text        NOT NULL,
    cap          text        NOT NULL,
    period_start timestamptz NOT NULL,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (scope, cap, period_start)
);

-- Every process working jobs on this database. While it lives, it holds the session advisory lock
-- (PROCESS_LOCK_CLASS, id) on a connection of its own: when the process dies, on whatever host, PostgreSQL drops
-- the lock with the connection, and the other processes see that in pg_locks at once.
CREATE TABLE processes (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner      text        NOT NULL UNIQUE,               -- the runner's lease owner, "host:pid:nonce"
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);

-- Verified webhook calls, whichever process received them; the process following the job is woken by NOTIFY
-- and, NOTIFY being lost when nobody listens, by a periodic scan.
CREATE TABLE webhook_inbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text        NOT NULL,
    remote_id   text        NOT NULL,
    verified    boolean     NOT NULL,                    -- its signature checked out (fal's are signed)
    outcome     jsonb,                                   -- a verified call's outcome (bot.webhooks.outcomes)
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_inbox_job ON webhook_inbox (provider, remote_id);
CREATE INDEX webhook_inbox_received ON webhook_inbox (received_at);

-- Job images, where every process on every host can read them: content-addressed (one row per distinct image),
-- pruned by retention when no kept job refers to them.
CREATE TABLE blobs (
    sha256     text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    data       bytea       NOT NULL,
    size       integer     NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
