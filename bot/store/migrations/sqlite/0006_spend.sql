-- Atelier schema, version 7: what each job costs in money, for spend caps and usage in dollars.
--
-- Money is integer micro-dollars (1 USD = 1,000,000): SQL sums integers exactly, where REAL would drift and TEXT
-- decimals cannot be summed in SQL at all; six decimals cover every published per-image and per-megapixel price.
-- One row per job, written in the transaction that records the job and checks the caps.

CREATE TABLE job_spend (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id),
    scope          TEXT    NOT NULL,                       -- as jobs.scope: "guild:<id>" or "cli"
    user_id        TEXT    NOT NULL,
    operation      TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    images         INTEGER NOT NULL CHECK (images >= 0),   -- asked for; the images delivered once settled
    -- Counted against the install's and the guild's caps: the worst case until the job ends, then what it cost.
    -- A paid call that may have been billed without delivering (charged unknown) keeps its worst case here.
    reserved_micro INTEGER NOT NULL CHECK (reserved_micro >= 0),
    -- Counted against the member's own daily cap: what the member got, like the image quota.
    member_micro   INTEGER NOT NULL CHECK (member_micro >= 0),
    settled_at     TEXT
);

-- Every cap sums one UTC day or month of spend: of the install, of one guild, or of one member in a guild.
CREATE INDEX job_spend_created ON job_spend (created_at);
CREATE INDEX job_spend_scope_created ON job_spend (scope, created_at);

-- "Your server passed 80% of its budget" is said once per cap and period.
CREATE TABLE spend_notices (
    scope        TEXT NOT NULL,
    cap          TEXT NOT NULL,
    period_start TEXT NOT NULL,
    sent_at      TEXT NOT NULL,
    PRIMARY KEY (scope, cap, period_start)
);
