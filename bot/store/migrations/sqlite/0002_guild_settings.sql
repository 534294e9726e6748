-- Atelier schema, version 2: per-guild settings chosen by the guild's administrators (for example the
-- channels the bot may post in). One row per setting, so a new setting needs no migration.

CREATE TABLE guild_settings (
    guild_id   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value_json TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (guild_id, key)
);
