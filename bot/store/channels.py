"""What processes sharing a store tell each other (PostgreSQL NOTIFY channels). Notifications are for rare events
only (never progress), and each is only a hint: whoever acts on one reads the store; a periodic scan covers a lost
one."""

JOBS_CHANNEL = "atelier_jobs"  # a job nobody works is waiting for a process
SLOTS_CHANNEL = "atelier_slots"  # a job left a provider (payload: the provider): a slot may be free
WEBHOOKS_CHANNEL = "atelier_webhooks"  # a provider's call reached some process (payload: "provider remote_id")
CHANNELS = (JOBS_CHANNEL, SLOTS_CHANNEL, WEBHOOKS_CHANNEL)
