"""One budget for every bot-token REST request to Discord, across all of the install's processes.

Discord allows 50 bot-token requests per second per token, whatever the number of processes, and bans the IP of a
bot that keeps hitting 429s. Interaction responses (callbacks, follow-ups, @original edits) are exempt; discord.py
sends them through its webhook adapter, not `HTTPClient.request`, over the same session, where they pass ungated.

- priority.py: what a request is for (`with rest_priority(Priority.RESULT): ...`), served strictly in that order.
- budget.py: the token bucket and its line of waiting requests.
- install.py: gating the bot's requests where they leave (its HTTP session), and this process's share of
  DISCORD_REST_PER_SECOND.
"""

from bot.discord_rest.budget import RestBudget
from bot.discord_rest.install import install_budget
from bot.discord_rest.priority import Priority, current_priority, rest_priority

__all__ = ["Priority", "RestBudget", "current_priority", "install_budget", "rest_priority"]
