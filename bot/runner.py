"""The job runner, now the bot.jobs package; this name stays for the modules and scripts that import it."""

from bot.jobs import Deliverer, JobEvent, JobNotFoundError, Listener, Prepare, Runner, RunnerConfig

__all__ = ["Deliverer", "JobEvent", "JobNotFoundError", "Listener", "Prepare", "Runner", "RunnerConfig"]
