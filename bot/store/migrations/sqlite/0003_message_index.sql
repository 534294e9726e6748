-- Atelier schema, version 3: find a job from the Discord message that shows its result (reactions and
-- buttons on a result name the message, not the job).

CREATE INDEX jobs_message ON jobs (message_id) WHERE message_id IS NOT NULL;
