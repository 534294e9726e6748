-- Atelier schema on PostgreSQL, version 3: what the bot processes coordinate to share Discord's gateway.

-- Which process serves which range of gateway shards (bot.shards.claim). A range whose process is gone (its
-- liveness lock no longer held) is free again; the row goes with the process row.
CREATE TABLE shard_claims (
    shard_count integer     NOT NULL CHECK (shard_count >= 1),
    first_shard integer     NOT NULL CHECK (first_shard >= 0),
    shard_ids   integer[]   NOT NULL,
    process_id  integer     NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard_count, first_shard)
);

-- When each IDENTIFY bucket (shard_id % max_concurrency) last had its turn: Discord takes one IDENTIFY per bucket
-- per 5 s from the whole bot, whichever process sends it (bot.shards.identify).
CREATE TABLE identify_turns (
    bucket  integer     PRIMARY KEY CHECK (bucket >= 0),
    last_at timestamptz NOT NULL
);

-- What the slash commands looked like when last published, per scope ("global" or "guild:<id>"): a process
-- publishes them only when what it would send differs (bot.command_sync).
CREATE TABLE command_syncs (
    scope     text        PRIMARY KEY,
    digest    text        NOT NULL,
    synced_at timestamptz NOT NULL
);
