"""Jobs: recorded, worked to their end by one process at a time, and delivered exactly once.

runner (the façade the Discord layer and the CLI call) · walk (one job from its stored state to its end) ·
choice / submit / send (which provider, and the paid step) · follow (polling and webhooks) · conclude (how a job
ends) · outbox (delivery) · cancel · recovery (command-line jobs left behind) · upkeep (leases, pruning) ·
events (what listeners hear) · core (what all of them share).
"""

from bot.jobs.cancel import JobNotFoundError
from bot.jobs.core import RunnerConfig
from bot.jobs.events import JobEvent, Listener
from bot.jobs.outbox import Deliverer
from bot.jobs.runner import Prepare, Runner

__all__ = ["Deliverer", "JobEvent", "JobNotFoundError", "Listener", "Prepare", "Runner", "RunnerConfig"]
