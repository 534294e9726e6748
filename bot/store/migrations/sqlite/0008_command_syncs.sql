-- Atelier schema, version 8: what the slash commands looked like when last published, per scope ("global" or
-- "guild:<id>"). A start publishes them only when what it would send differs (bot.command_sync): Discord allows
-- 200 command creates a day per guild.

CREATE TABLE command_syncs (
    scope     TEXT PRIMARY KEY,
    digest    TEXT NOT NULL,
    synced_at TEXT NOT NULL
);
