-- Atelier schema, version 5: models found retired at a provider. A mark lets every process (the bot, other
-- bots on the same file, one-shot `atelier job` runs) skip the model until it expires, instead of trying the
-- dead endpoint on every job. Expired rows are simply overwritten by the next mark.

CREATE TABLE retired_models (
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    reason     TEXT NOT NULL,   -- Atelier's own words: what answered, and what to set instead
    marked_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (provider, model)
);
